(println "this never runs")
(defun f (x)
  (+ x 1)
