; sprintf is the string module's name of stringf: (sprintf value format), one C conversion.
(println (sprintf 42 "%05d") (sprintf 3.14159 "%.2f") (sprintf 255 "0x%X"))
(println (= (sprintf 9 "%d") (stringf 9 "%d")))
(println (maybe (sprintf 1 "%d %d") "one conversion only"))
