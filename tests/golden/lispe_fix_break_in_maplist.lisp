; A (break) inside the function given to maplist/filterlist ends that walk only:
; the enclosing loop goes on with its next element.
(setq seen ())
(loop c '(a b c)
   (push seen (maplist (\(x) (if (eq x 3) (break) (list c x))) '(1 2 3 4))))
(println seen)
(println (filterlist (\(x) (if (> x 3) (break) (eq (% x 2) 1))) '(1 2 3 4 5)))
(println (takelist (\(x) (if (eq x 4) (break) true)) '(1 2 3 4 5)))
; A float position is truncated, as LispE's checkInteger does
(setq l '(10 20 30 40 50))
(println (@ l (/ (size l) 2)) (@ l 1.9) (@ l -1.5))
