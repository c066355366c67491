; where the element goes, per builtin, as LispE's composing.cxx and its list functions do
; map: a bare operator gets the element twice, '(op v) is (op x v), '(v op) is (op v x)
(println (map '+ '(1 2 3)) (map '* '(1 2 3)) (map '- '(1 2 3)) (map + '(1 2 3)))
(println (map '(- 1) '(5 6)) (map '(1 -) '(5 6)) (map '(* 10) '(1 2 3)))
(println (map (lambda (x) (* x x)) '(1 2 3)) (map '(lambda (x) (+ x 1)) '(1 2)))
(println (map '+ (map '* '(1 2 3))) (filter '(< 20) (map '+ '(1 3 5 9 6 4))))
; filter / takewhile / dropwhile: '(cmp v) tests (cmp x v), '(v cmp) tests (cmp v x)
(println (filter '(< 10) '(1 4 5 10 11 20)) (filter '(10 <) '(1 4 5 10 11 20)))
(println (takewhile '(< 5) '(1 4 5 1)) (takewhile '(5 >) '(1 4 5 1)) (dropwhile '(< 5) '(1 4 5 1)))
; filterlist / takelist / droplist / maplist / mapcar: the element at the _ slot, or at the end
(println (filterlist '(< 10) '(1 4 5 10 11 20)) (filterlist '(< _ 10) '(1 4 5 10 11 20)))
(println (takelist '(> 10) '(1 4 12 3)) (droplist '(< 10) '(1 4 12 3)))
(println (maplist '(- 10) '(1 2)) (maplist '(- _ 10) '(1 2)) (maplist '+ '(1 2)) (mapcar '(- 10) '(1 2)))
; folds: (op acc x) from the left, (op x acc) from the right
(println (foldl '- 10 '(1 2 3)) (foldr '- 10 '(1 2 3)) (scanl '- 10 '(1 2 3)))
; filtercar / takecar / dropcar: as filterlist / takelist / droplist, always giving a plain list
(println (filtercar '(< 10) (integers 1 4 5 10 11 20)) (takecar '(> 10) '(1 4 12 3)) (dropcar '(< 10) '(1 4 12 3)))
(println (type (filtercar '(< 10) (integers 1 20))) (type (filterlist '(< 10) (integers 1 20))) (type (filterlist '(< 10) (integers 1 20) false)))
