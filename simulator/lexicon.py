"""Words the seed draws from: names, subjects and sentences for a believable support org."""

from __future__ import annotations

FIRST_NAMES = (
    "Martha", "Francis", "Amy", "Diego", "Priya", "Noah", "Leila", "Tomasz", "Grace", "Kenji",
    "Olivia", "Samuel", "Aisha", "Mateo", "Hannah", "Ravi", "Chloe", "Jonas", "Fatima", "Lucas",
    "Ingrid", "Omar", "Sofia", "Ethan", "Mei", "Kwame", "Elena", "Jack", "Nadia", "Pablo",
)
LAST_NAMES = (
    "Williams", "Avallone", "Nguyen", "Garcia", "Patel", "Kowalski", "Okafor", "Smith", "Tanaka",
    "Müller", "Rossi", "Johansson", "Haddad", "Brown", "Dubois", "Silva", "Kim", "O'Brien",
    "Novak", "Cohen", "Mensah", "Lopez", "Schmidt", "Ivanova", "Singh", "Clarke",
)
STREETS = (
    "Spring Forest Ln", "Rigoberto Station", "Maple Ave", "Harbor Blvd", "Elm St", "Cedar Ct",
    "Ocean View Dr", "Market St", "Lincoln Way", "Sunset Terrace",
)
CITIES = (
    "Westlake Village, CA 91362", "Portland, OR 97205", "Austin, TX 78701", "Denver, CO 80202",
    "Madison, WI 53703", "Raleigh, NC 27601", "Boise, ID 83702", "Tucson, AZ 85701",
)
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example")
TIERS = ("bronze", "silver", "gold", "platinum")

SUBJECTS = (
    "Where is my order?", "Damaged item in my package", "Refund request", "Question about sizing",
    "Can I change my shipping address?", "Loyalty points missing", "Order arrived late",
    "Wrong color delivered", "Cancel my subscription", "Promo code not working",
    "Exchange for a larger size", "Billing question", "Account upgrade", "Gift card balance",
)
CUSTOMER_SENTENCES = (
    "Hi, I placed an order last week and it still hasn't shipped.",
    "Part of my order was damaged. May I get a refund for those items?",
    "Can someone help me change the delivery address on my order?",
    "I was charged twice for the same purchase.",
    "The jacket I received is a size too small, can I exchange it?",
    "My tracking number hasn't updated in four days.",
    "I love your brand! Do you have a loyalty program?",
    "The promo code from your newsletter says it's expired.",
    "Could you tell me when the blue version will be back in stock?",
    "I'd like to cancel my subscription before the next billing date.",
    "The box arrived open and one item is missing.",
    "Thanks for the quick reply, that worked.",
    "Is there a way to combine two orders to save on shipping?",
    "I never received the confirmation email.",
    "Hi! I know it's after hours but can someone help upgrade my account?",
    "My order number is in the subject line.",
    "Please let me know what information you need from me.",
    "I tried resetting my password but the link doesn't work.",
)
AGENT_SENTENCES = (
    "Thanks for reaching out, I'm happy to help with that.",
    "I'm sorry about the trouble with your order.",
    "I've issued a refund for the damaged items; you'll see it in 3-5 business days.",
    "I've updated the shipping address on your order.",
    "Could you send me a photo of the damaged item?",
    "I've sent a prepaid return label to your email address.",
    "Your order is on its way and should arrive by Friday.",
    "I've added the missing loyalty points to your account.",
    "Is there anything else I can help you with today?",
    "I've escalated this to our fulfillment team and will follow up shortly.",
    "The promo code has been applied to your order.",
    "We'd be happy to help you! We need a few details, so please give us a call.",
)
NOTE_SENTENCES = (
    "Customer has requested more information about our loyalty program.",
    "<b>Follow up Monday</b> about the replacement shipment.",
    "Verified identity via order number and billing zip.",
    "Refund approved by <b>team lead</b>.",
    "Possible carrier issue, see <i>tracking history</i>.",
    "<p>Escalating to tier 2: duplicate charge.</p>",
    "Customer prefers SMS for updates.",
    "Checked warehouse stock: <b>back in stock next week</b>.",
)
QUICK_REPLY_LABELS = ("Track my order", "Start a return", "Talk to an agent", "Something else")
