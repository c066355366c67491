(setq m '((1 2) (3 4)))
(println (caar m) (cdar m) (cadar m) (caadr m) (cdadr m) (cddar m))
(println (caaar '(((x)))) (cdaar '(((x y)))) (cddr '(1)))
