; a place must be (@ container key...) on a list or a dictionary
(setq t "abc")
(println (catch (+= (@ t 0) 1)))
(println (catch (+= (@ 5 0) 1)))
(println (catch (+= (@ (list 1 2) 5) 1)))
(+= (car t) 1)
