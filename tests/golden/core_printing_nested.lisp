(println '((1 2) (3 (4 (5)))) '("s" ("t")) '(() ()))
(println (list 'a "b" 1 2.0 nil true '(c)))
(print '(1 "two") "\n")
(println (list (list "x")))
