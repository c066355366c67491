(println (apply '+ '(1 2)))
(apply '+ 3)
