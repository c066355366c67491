; a text adventure dispatches commands (lists of atoms) on data structures, as upstream minizork does;
; data is the older name of data@, and it is hoisted: the defpat clauses above it see the structures
(defpat action ( [Pick 'up x] ) (action (Take x)))
(defpat action ( [Take x] ) (list 'taking x))
(defpat action ( [Move direction] ) (list 'moving direction))
(defpat action (_) 'default)
(data
   [Move atom_]
   [Pick atom_ atom_]
   [Take atom_])
(println (action '(Pick up stone)) (action (map 'atom (split "Move north" " "))) (action '(Dance)) (action (Take 'key)))
(println (catch (Take "key")))
