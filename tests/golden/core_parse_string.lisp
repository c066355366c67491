(println "fine")
(println "not closed)
