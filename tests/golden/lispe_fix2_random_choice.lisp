; one draw gives the element itself; more give a list; the third argument is a weight
(setq one (random_choice 1 '(a b) 10))
(println (atomp one) (or (= one 'a) (= one 'b)))
(println (random_choice 3 '(z) 10))
(println (size (random_choice 5 (integers 0 1) 17)) (random_choice 2 (integers 7) 4))
(println (random_choice 1 '("only") 10))
(random_choice 2 '(1 2) "heavy")
