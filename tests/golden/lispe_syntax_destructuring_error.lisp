; a nested list of variables is refused, as in LispE
(println "start")
(setq (a (b c)) '(1 (2 3)))
