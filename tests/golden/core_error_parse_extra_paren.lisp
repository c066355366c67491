(println "a")
(println "b"))
