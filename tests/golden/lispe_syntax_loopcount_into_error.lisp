; 'into' must be followed by a variable
(println "start")
(loopcount 3 into (println "x"))
