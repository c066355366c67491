; non-tail recursion reaches 10,000 levels
(defun depth (n) (if (= n 0) 0 (+ 1 (depth (- n 1)))))
(println (depth 10000))
(defun build (n) (if (= n 0) '() (cons n (build (- n 1)))))
(println (size (build 5000)))
