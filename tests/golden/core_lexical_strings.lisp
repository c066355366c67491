(println "tab:\tend" "quote:\"q\"" "backslash:\\" "other:\q")
(println "line1\nline2")
(println `raw \n string
spanning lines`)
(println """long "quoted" string
with \n kept""")
(println (size "\t") '("a\"b"))
