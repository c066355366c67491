(defpat only_one (1) 'one)
(println (only_one 1))
(only_one 2)
