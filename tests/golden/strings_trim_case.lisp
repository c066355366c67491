(println (+ "[" (trim "  hi  ") "]") (+ "[" (trimleft "  hi  ") "]") (+ "[" (trimright "  hi  ") "]"))
(println (upper "abc é") (lower "ABC É"))
