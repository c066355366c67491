(defun check_positive (n)
   (if (< n 0) (throw (+ "negative: " n)) n))
(println (check_positive 3))
(println (check_positive -2))
