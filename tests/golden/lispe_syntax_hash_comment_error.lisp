(println "before")
  # a comment written the shell way is not a LispE comment
(println "after")
