(defun add2 (a b) (+ a b))
(println (add2 1 2))
(add2 1)
