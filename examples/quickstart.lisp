; quickstart.lisp -- the "Quick start" snippet of docs/guide.md, on a real model.
; model: smollm2
;
;   lispe examples/quickstart.lisp
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet: they
; bind what the snippet assumes (a `model`) and print what it produced.

; Load the library
(use 'lispe_torch)

; [added] the model the guide assumes: the embedded SmolLM2-135M-Instruct (its tokenizer becomes the
; default one, used by tokenizer_encode / tokenizer_decode / tokenizer_chat)
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))

; Create a generator with a PyTorch model
(setq generator (torch_generator_create model "cpu"))

; [added] at most 24 new tokens per call, so the demo takes seconds on a CPU (the default is 50)
(torch_set_generation_params generator 24 nil nil nil)

; Generate text with greedy search
(setq input_tokens (torch_tensor (integers 15339 1332)))
(setq result (torch_generate generator input_tokens "greedy"))

; [added] show what the guide's ids are in this vocabulary and what the model wrote after them
(println "The guide's prompt ids" (tensor_to_list input_tokens) "read:" (tokenizer_decode input_tokens))
(println "Greedy continuation:" (tokenizer_decode (tensor_slice result 0 (size input_tokens) (size result))))
(println)

; [added] the same two guide lines on a real prompt: a question in the model's chat format
(setq question "What is the capital of France?")
(setq input_tokens (torch_tensor (tokenizer_chat (list (list "user" question)))))
(setq result (torch_generate generator input_tokens "greedy"))
(println "Q:" question)
(println "A:" (tokenizer_decode (tensor_slice result 0 (size input_tokens) (size result))))
