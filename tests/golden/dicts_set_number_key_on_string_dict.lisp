(setq d {"a":1})
(key d 2 "two")
(println d (key d 2) (key d "2"))
