(defun nest (n) (if (= n 0) '() (list (nest (- n 1)))))
(setq d (nest 2000))
(println (size (string d)))
(println (nest 3))
