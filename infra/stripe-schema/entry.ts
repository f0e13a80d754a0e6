// The objects the stripe-stub serves, as the `stripe` npm package types them for its pinned API
// version. derive.mjs turns these aliases into one JSON Schema (one definition per alias).
import type { Customer, DeletedCustomer } from 'stripe/esm/resources/Customers';
import type { Subscription } from 'stripe/esm/resources/Subscriptions';
import type { SubscriptionItem } from 'stripe/esm/resources/SubscriptionItems';
import type { Invoice } from 'stripe/esm/resources/Invoices';
import type { Charge } from 'stripe/esm/resources/Charges';
import type { Product, DeletedProduct } from 'stripe/esm/resources/Products';
import type { Price, DeletedPrice } from 'stripe/esm/resources/Prices';
import type { Coupon } from 'stripe/esm/resources/Coupons';
import type { Discount } from 'stripe/esm/resources/Discounts';
import type { PaymentMethod } from 'stripe/esm/resources/PaymentMethods';
import type { Account } from 'stripe/esm/resources/Accounts';
import type {
  AccountApplicationDeauthorizedEvent,
  ChargeFailedEvent,
  ChargeRefundedEvent,
  ChargeSucceededEvent,
  ChargeUpdatedEvent,
  CouponCreatedEvent,
  CouponDeletedEvent,
  CouponUpdatedEvent,
  CustomerCreatedEvent,
  CustomerDeletedEvent,
  CustomerDiscountCreatedEvent,
  CustomerDiscountDeletedEvent,
  CustomerDiscountUpdatedEvent,
  CustomerSubscriptionCreatedEvent,
  CustomerSubscriptionDeletedEvent,
  CustomerSubscriptionUpdatedEvent,
  CustomerUpdatedEvent,
  InvoiceCreatedEvent,
  InvoiceFinalizedEvent,
  InvoicePaidEvent,
  InvoicePaymentFailedEvent,
  InvoicePaymentSucceededEvent,
  InvoiceUpdatedEvent,
  InvoiceVoidedEvent,
  PriceCreatedEvent,
  PriceDeletedEvent,
  PriceUpdatedEvent,
  ProductCreatedEvent,
  ProductDeletedEvent,
  ProductUpdatedEvent,
} from 'stripe/esm/resources/Events';
import type { ApiList } from 'stripe/esm/lib';

export type StubCustomer = Customer;
export type StubDeletedCustomer = DeletedCustomer;
export type StubSubscription = Subscription;
export type StubSubscriptionItem = SubscriptionItem;
export type StubInvoice = Invoice;
export type StubCharge = Charge;
export type StubProduct = Product;
export type StubDeletedProduct = DeletedProduct;
export type StubPrice = Price;
export type StubDeletedPrice = DeletedPrice;
export type StubCoupon = Coupon;
export type StubDiscount = Discount;
export type StubPaymentMethod = PaymentMethod;
export type StubAccount = Account;

export type StubCustomerList = ApiList<Customer>;
export type StubSubscriptionList = ApiList<Subscription>;
export type StubSubscriptionItemList = ApiList<SubscriptionItem>;
export type StubInvoiceList = ApiList<Invoice>;
export type StubChargeList = ApiList<Charge>;
export type StubProductList = ApiList<Product>;
export type StubPriceList = ApiList<Price>;
export type StubCouponList = ApiList<Coupon>;

/** The event types the stand-in emits. */
export type StubEvent =
  | AccountApplicationDeauthorizedEvent
  | ChargeFailedEvent
  | ChargeRefundedEvent
  | ChargeSucceededEvent
  | ChargeUpdatedEvent
  | CouponCreatedEvent
  | CouponDeletedEvent
  | CouponUpdatedEvent
  | CustomerCreatedEvent
  | CustomerDeletedEvent
  | CustomerDiscountCreatedEvent
  | CustomerDiscountDeletedEvent
  | CustomerDiscountUpdatedEvent
  | CustomerSubscriptionCreatedEvent
  | CustomerSubscriptionDeletedEvent
  | CustomerSubscriptionUpdatedEvent
  | CustomerUpdatedEvent
  | InvoiceCreatedEvent
  | InvoiceFinalizedEvent
  | InvoicePaidEvent
  | InvoicePaymentFailedEvent
  | InvoicePaymentSucceededEvent
  | InvoiceUpdatedEvent
  | InvoiceVoidedEvent
  | PriceCreatedEvent
  | PriceDeletedEvent
  | PriceUpdatedEvent
  | ProductCreatedEvent
  | ProductDeletedEvent
  | ProductUpdatedEvent;
export type StubEventList = ApiList<StubEvent>;
