(defun f (x) x)
(println (functionp (lambda (x) x)) (functionp 'f) (functionp 3) (functionp "car"))
