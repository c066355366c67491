; two '.' in a row leave nothing to compose
(println "before")
(defun f (x) x)
(println (f . . f 1))
