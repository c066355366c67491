; Kleene operators in list patterns: (pattern)+ (pattern)* (pattern)% collect the variable of the
; pattern, greedily; x+ x* x% take the elements up to the one the next pattern matches
(defpat collect-small ([(< x 10)+ $ rest]) (list 'collected x rest))
(defpat collect-small (lst) (list 'none lst))
(println (collect-small '(5 8 12 3 15)) (collect-small '(12 3)))
(defpat ints ([(integer_ x)* (string_ s)*]) (list x s))
(println (ints '(1 2 "a" "b")) (ints '("a")) (ints '(1 2)) (ints '()))
(defpat opt ([(integer_ n)% s]) (list n s))
(println (opt '(1 "a")) (opt '("a")))
(defpat words ([a+ 'and b+]) (list a b))
(println (words '(x y and z)) (catch (words '(and z))))
(defpat tail ([h t*]) (list h t))
(println (tail '(1 2 3)) (tail '(1)))
