; loop with a list of variables walks several containers in step and stops with the shortest
; (LispE's multiloop); a dictionary gives its values; break leaves it
(loop (x y) '(1 2 3) '(10 20 30) (print (+ x y) " "))
(println)
(loop (a b c) "abc" (integers 1 2) '(x y z) (print a b c " "))
(println)
(println (loop (k v) '(1 2) {"a":5 "b":7} (* k v)))
(println (loop (x y) '(1 2 3) '(4 5 6) (check (eq x 2) (break)) (print x y " ")))
(defun pairs (l1 l2) (setq r ()) (loop (u w) l1 l2 (push r (list u w))) r)
(println (pairs '(a b) '(1 2 3)))
(loop (x y) '(1 2))
