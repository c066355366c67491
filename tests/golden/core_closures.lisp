; lambdas close over their defining frame
(defun make_counter ()
   (setq count 0)
   (lambda () (setq count (+ count 1)) count))
(setq c1 (make_counter))
(setq c2 (make_counter))
(println (c1) (c1) (c1) (c2))

(defun adder (n) (lambda (x) (+ x n)))
(setq add5 (adder 5))
(println (add5 10) ((adder 1) 1))
