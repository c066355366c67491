(defun add_one () (push '(1 2) 3))
(println (add_one))
(println (add_one))
