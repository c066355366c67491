[println [+ 1 2] (list [* 2 3])]
(defun f [x] [+ x 1])
(println (f 1) '[a b])
