(println "ok")
(break)
