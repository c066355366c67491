; ° takes the operator first or, as LispE's List_outerproduct_eval reads it, between the lists;
; ∈ on a matrix marks every element (it compared whole rows and answered all zeros).
(println (° '+ '(1 2) '(10 20 30)))
(println (° '(1 2) '+ '(10 20 30)))
(println (° '(1 2 3) '= '(3 2 1)))
(println (° (iota 2) (λ (x y) (list x y)) '(a b)))
(setq grid (rho 2 3 (iota 6)))
(println (∈ grid '(2 6 7)))
(println (member '(5 6 7) '(7 5)))
(println (∈ '((1 2) ((3 4) 5)) '(4 1)))
