; ctx.call: quoted symbols, lambdas and partial calls as function arguments
; a bare operator given to map receives the element twice (composing.cxx): (+ x x)
(println (map (quote +) (quote (1 2))))
(println (filter '(< 3) '(1 5 2 8)))
(println (filter '(< _ 3) '(1 5 2 8)))
(println (map '(* 10) '(1 2 3)))
(println (foldl '+ 0 '(1 2 3 4)))
(defun inc (x) (+ x 1))
(println (map 'inc '(1 2 3)))
