(setq d {"a":1 "b":2})
(pop d "a")
(println d (pop d "zz"))
(println (pop "abc") (pop "abc" 0) (popfirst "abc") (pop "" ))
