; JSON-style commas in a dictionary literal read as part of an atom (`1,`): the error says LispE
; separates pairs with spaces. A comma glued to a key or an atom outside a dictionary gets a hint too.
(println {"a":1 "b":2})
(println (catch {"a":1, "b":2}))
(println (catch {"a":1,"b":2}))
(println (catch {k,:1}))
(println (catch (list 1, 2)))
(setq config {"max_length":20,
              "temperature":0.7})
