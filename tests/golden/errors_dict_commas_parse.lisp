; A lone comma between the pairs of a dictionary is a reading error: the hint says why.
(println "never printed: the file does not read")
(setq d {"a" : 1 , "b" : 2})
