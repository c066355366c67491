(setq xs (map 'string '(1 2.5 -3)))
(println xs (type xs) (map 'number xs) (map 'integer '("10" "0b101" "-7")))
(println (+ (integer "40") 2) (string (+ 0.1 0.2)) (atom (+ "a" "b")))
(println (join (map 'string (iota 3)) "+") (format "%1+%2=%3" 1 2 (+ 1 2)))
