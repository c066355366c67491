; {v1 v2 ...} without key:value pairs is a set (LispE's set literal): integers give a seti,
; numbers a setn, strings a sets, anything else (expressions included) a set.
(setq s {3 1 2 3})
(println s (type s) (in s 2) (in s 9))
(println {"b" "a" "b"} (type {"b" "a"}))
(println {1.5 2} (type {1.5 2}))
(setq n 4)
(println {n (* n n)} (type {n 1}))
(println (type {}) {"k":1} (type {"k":1}))
(setq s2 {10 20})
(insert s2 30)
(println s2 (size s2))
