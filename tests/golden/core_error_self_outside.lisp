(println "ok")
(self 1)
