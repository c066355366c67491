(defun down (n) (+ 1 (down (+ n 1))))
(println "before")
(down 0)
