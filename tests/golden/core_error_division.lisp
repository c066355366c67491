(println "before")
(defun ratio (a b) (/ a b))
(println (ratio 1 0))
(println "never")
