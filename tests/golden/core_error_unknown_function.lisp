(defun compute (x) (* x 2))
(println (compute 2))
(println (compte 3))
