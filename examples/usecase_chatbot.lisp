; usecase_chatbot.lisp -- the "Chatbot replies" config of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment apply the config to a
; generator and answer a user's message in the model's chat format.

(use 'lispe_torch)

; [added] the generator the config is for
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))

(setq config (
    ("max_length" 100)
    ("temperature" 0.8)
    ("top_p" 0.9)
    ("strategy" "top_p")
    ("repetition_penalty" 1.1)
))

; [added] apply it and answer a message (a seed makes the run repeatable)
(torch_generator_config generator config)
(torch_generator_config generator {"seed":1})
(setq message "Hi! Can you suggest a quick breakfast idea?")
(setq input_tokens (torch_tensor (tokenizer_chat (list (list "user" message)))))
(setq result (torch_generate generator input_tokens))
(println "User:" message)
(println "Bot: " (tokenizer_decode (tensor_slice result 0 (size input_tokens) (size result))))
