(setq l '((((1 2) (3 4)) ((5 6) (7 8))) (((9 10) (11 12)) ((13 14) (15 16)))))
(println (caaar l) (caadr l) (cadar l) (caddr l) (cdaar l) (cdadr l) (cddar l) (cdddr l))
(println (caaaar l) (caaadr l) (caadar l) (caaddr l) (cadaar l) (cadadr l) (caddar l) (cadddr l))
(println (cdaaar l) (cdaadr l) (cdadar l) (cdaddr l) (cddaar l) (cddadr l) (cdddar l) (cddddr l))
