(println (car))
