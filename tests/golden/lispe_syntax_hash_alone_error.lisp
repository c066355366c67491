(println "before")
(println 1) # trailing shell-style comment
