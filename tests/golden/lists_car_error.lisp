(println "before")
(car 42)
