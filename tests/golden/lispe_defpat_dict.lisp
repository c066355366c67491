; dictionary patterns: a symbol key binds a key, _ any key, $:rest the keys left
(defpat tst ({_:y _:y $:z}) (list y z))
(println (tst {"12":"machine" "truc":"machin" "bidule":"machine"}))
(defpat walk ({} acc) (reverse acc))
(defpat walk ({k:v $:rest} acc) (walk rest (cons (list k v) acc)))
(println (walk {"b":2 "a":1 "c":3} ()))
; literal keys must be present; $:_ allows more keys
(defpat person ({"name":n "age":(integer_ a) $:_}) (+ n " is " (string a)))
(defpat person (x) "not a person")
(println (person {"name":"Ann" "age":31 "town":"Lyon"}))
(println (person {"name":"Ann" "age":"old"}))
(println (person {"name":"Bob"}))
; without $ the dictionary must have exactly the pattern's entries
(defpat one ({k:v}) (list 'one k v))
(defpat one (d) 'not_one)
(println (one {"a":1}) (one {"a":1 "b":2}) (one {}) (one 12))
; numeric keys
(defpat firstkey ({1:x $:r}) (list x r))
(println (firstkey {1:"a" 2:"b"}))
