; `$ rest` gathers the remaining arguments; `$ rest` in the body splices them
(defmacro tantque (c $ body) (while c $ body))
(setq i 0)
(tantque (< i 3) (print i " ") (+= i 1))
(println)
(defmacro mylist ($ items) (list 'start $ items 'end))
(println (mylist 1 2 3))
(println (mylist))
