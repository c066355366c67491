; droplist drops the elements before the first one its predicate accepts and keeps all the rest,
; even those the predicate refuses later (LispE's List_droplist_eval); takelist stops at the first refusal
(println (droplist '(< 10) '(1 4 12 3 20)))
(println (droplist (λ (x) (> x 3)) '(1 4 2 5)))
(println (droplist '(< _ 0) '(1 2 3)))
(println (droplist '(> _ 0) (integers 1 -2 3)) (type (droplist '(> _ 0) (integers 1 -2 3))))
(println (dropcar '(< 1) (integers 0 1 2 0)) (type (dropcar '(< 1) (integers 0 1 2 0))))
(println (droplist (λ (x) (if (eq x 9) (break) (> x 2))) '(1 9 5)))
(println (takelist '(< 10) '(12 14 3 20)) (dropwhile '(< 5) '(1 4 5 1)))
