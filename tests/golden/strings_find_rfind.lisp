(println (find "hello" "l") (rfind "hello" "l") (rfind "hello" "z") (rfind "hello" "l" 2) (rfind '(1 2 1 3) 1))
