(setq x 1)
(println (let ((x 10) (y 20)) (+ x y)))
(println x)
; bindings are sequential
(println (let ((a 2) (b (* a 3))) (list a b)))
(defun f (n) (let ((sq (* n n))) (+ sq 1)))
(println (f 4))
