; bitwise operators and == work element by element on lists and matrices
(setq grid (rho 2 3 (integers 4 1 3 4 0 3)))
(setq alive (rho 2 3 (integers 1 1 0 0 1 1)))
(println (== grid 4) (== 3 (integers 3 1 3)))
(println (& (== grid 4) alive))
(println (| (& (== grid 4) alive) (== grid 3)))
(println (& '(12 7) 10) (^ 6 '(3 5)) (& 12 10 8))
; ↑ is the spelling of ↑↑ (maplist) in LispE's README
(println (↑ (λ (x) (* x 2)) '(1 2 3)) (↑ (λ (k) (rotate '(1 2 3) k)) '(1 0 -1)))
(& '(1 2) '(1 2 3))
