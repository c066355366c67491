(defun f (x) x)
(println (type 1) (type 1.5) (type (float 1)) (type "s") (type '(1)) (type ()) (type {"a":1}) (type {1:2}))
(println (type 'a) (type nil) (type true) (type (integers)) (type (strings)) (type (lambda (x) x)))
(println (eq (type 1) 'integer_) (type (type 1)))
