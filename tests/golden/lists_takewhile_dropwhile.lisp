(println (takewhile '(< 3) '(1 2 5 1)) (dropwhile '(< 3) '(1 2 5 1)))
(println (takewhile 'numberp '("a" 1)) (dropwhile 'numberp '(1 2)))
